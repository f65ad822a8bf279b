//! The configuration model: one TOML file, deserialised with serde
//! (`deny_unknown_fields` everywhere) and validated as a whole, so that a
//! loaded [`Config`] is one the proxy can run.

mod backend_tls;
mod backend_url;
mod credential;
mod error;
mod table;

pub use backend_tls::{BackendTls, ClientCert, SslMode, TlsOptionError};
pub use backend_url::{BackendUrl, BackendUrlError};
pub use credential::{AuthPlugin, Credential};
pub(crate) use error::declared_list;
pub use error::{ConfigError, Problem};
pub use table::{AlgorithmConfig, KeyConfig, KeyGenerator, StrategyConfig, TableConfig};

use crate::datetime::parse_utc_millis;
use crate::route::ShardingRules;
use crate::snowflake::{Epoch, WorkerId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use table::RawTableConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    /// Keyed by data source name (`ds0`), in name order.
    pub data_sources: BTreeMap<String, DataSourceConfig>,
    /// Sharded tables keyed by logical name.
    pub tables: BTreeMap<String, TableConfig>,
    pub broadcast: BroadcastConfig,
    /// Groups of sharded tables laid out alike, so that rows joined on
    /// their sharding columns sit on the same node (ShardingSphere's
    /// binding tables).
    pub binding: Vec<BindingConfig>,
    pub snowflake: SnowflakeConfig,
    pub alerts: AlertConfig,
    /// Further logical databases, beside `server.database` (whose rules are
    /// the top-level `tables`, `broadcast` and `binding`), keyed by name:
    /// ShardingSphere's model, each with rules of its own.
    pub databases: BTreeMap<String, DatabaseConfig>,
}

/// A logical database besides the first: its own unsharded tables' data
/// source and its own rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// Where its tables named by no rule live; no other logical database
    /// may use it so.
    pub default_data_source: String,
    pub tables: BTreeMap<String, TableConfig>,
    pub broadcast: BroadcastConfig,
    pub binding: Vec<BindingConfig>,
}

/// The rules of one logical database, wherever the file declares them.
#[derive(Debug, Clone)]
pub struct DatabaseRules<'a> {
    pub name: &'a str,
    pub default_data_source: &'a str,
    pub tables: &'a BTreeMap<String, TableConfig>,
    pub broadcast: &'a BroadcastConfig,
    pub binding: &'a [BindingConfig],
    /// Where its rules stand in the file: `""` for the first database,
    /// `databases.<name>.` for the others (error messages name the key).
    pub key_prefix: String,
}

impl DatabaseRules<'_> {
    /// Whether this is the first logical database (`server.database`).
    pub fn is_first(&self) -> bool {
        self.key_prefix.is_empty()
    }

    /// The file's key of its default data source.
    pub fn default_data_source_key(&self) -> String {
        if self.is_first() {
            "server.default_data_source".to_owned()
        } else {
            format!("{}default_data_source", self.key_prefix)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_mysql_listen")]
    pub mysql_listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// The logical database name clients see.
    pub database: String,
    /// Where tables named by no rule live.
    #[serde(default = "default_data_source")]
    pub default_data_source: String,
    /// Largest packet accepted from a client, in bytes.
    #[serde(default = "default_max_allowed_packet")]
    pub max_allowed_packet: usize,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Whether reads go to replicas at all (off: every statement on the
    /// primaries; replicas are still monitored).
    #[serde(default = "default_true")]
    pub read_write_splitting: bool,
    #[serde(default)]
    pub read_consistency: ReadConsistency,
    #[serde(default)]
    pub transaction_reads: TransactionReads,
    /// Bearer token the admin HTTP API asks for on mutating endpoints, and
    /// on every endpoint when it listens beyond loopback.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Threads that serve sessions (default: one per CPU). Taken at start.
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// Client connections served at once, logged in or not; one more is
    /// refused with 1040 (Too many connections), as MariaDB refuses it.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a client may take to log in after connecting (MariaDB's
    /// `connect_timeout`); then the connection is closed.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a logged-in session may wait for its next command before
    /// it is closed, its transaction rolled back (MariaDB's `wait_timeout`;
    /// a session's own `SET wait_timeout` replaces it for that session).
    #[serde(default = "default_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
    /// Sessions one user may have open at once, unless the user sets its
    /// own (`users[].max_connections`); 0: no limit (MariaDB's
    /// `max_user_connections`). One more gets 1203.
    #[serde(default)]
    pub max_user_connections: usize,
    /// Failed logins in a row (a wrong user or password, a malformed
    /// handshake) after which a client host is refused with 1129 for
    /// `host_block_ms` (MariaDB's `max_connect_errors`, which blocks until
    /// FLUSH HOSTS). A successful login clears the count.
    #[serde(default = "default_max_connect_errors")]
    pub max_connect_errors: u32,
    #[serde(default = "default_host_block_ms")]
    pub host_block_ms: u64,
    /// COM_STMT_SEND_LONG_DATA bytes one session's statements may hold until
    /// they execute. Each parameter is bounded by `max_allowed_packet`, as
    /// the server bounds it; this bounds their sum, which the proxy keeps in
    /// memory where the server would have streamed it into the parameter.
    #[serde(default = "default_max_long_data_per_session")]
    pub max_long_data_per_session: usize,
    /// Prepared statements one session may hold at once (MariaDB's
    /// `max_prepared_stmt_count`, which bounds the server's whole; each
    /// session here, whose statements the proxy keeps).
    #[serde(default = "default_max_prepared_statements")]
    pub max_prepared_statements: usize,
    /// The certificate and key clients are offered TLS with; none: clients
    /// connect in the clear.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// The certificate and key the admin HTTP listener serves HTTPS with
    /// (the API, the dashboard, /metrics); none: plain HTTP. Read with each
    /// configuration version, as `server.tls` is.
    #[serde(default)]
    pub admin_tls: Option<TlsFiles>,
    /// Refuse clients that did not negotiate TLS (MariaDB's
    /// `require_secure_transport`); needs `server.tls`.
    #[serde(default)]
    pub require_secure_transport: bool,
}

/// A certificate chain and its private key, PEM files read at start and at
/// each reload (so renewed files take effect on SIGHUP). Relative paths are
/// from the working directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server's certificate, then the chain up to (not including) the
    /// root clients trust.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// The password, in the file; or one of the three below.
    #[serde(default)]
    password: String,
    /// The hash a MariaDB server stores (see [`Credential`]).
    #[serde(default)]
    password_hash: Option<String>,
    /// A file holding the password (one trailing line ending is dropped),
    /// read at each load.
    #[serde(default)]
    password_file: Option<std::path::PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    password_env: Option<String>,
    /// The plugin it logs in with (default: see [`UserConfig::plugin`]).
    #[serde(default)]
    pub auth_plugin: Option<AuthPlugin>,
    /// The secret from whichever of the four above was given, read at load
    /// (they are private: this is the one to read or change).
    #[serde(skip)]
    pub credential: Credential,
    /// Sessions this user may have open at once (replaces
    /// `server.max_user_connections` for it; 0: no limit).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// The logical databases the user may use (None: every one). A login,
    /// `USE` or table naming another is refused as MariaDB refuses a
    /// database the user has no grant on.
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// The user may only read: statements that write, and the admin
    /// commands that change the proxy, are refused before they reach a
    /// data source.
    #[serde(default)]
    pub read_only: bool,
}

impl UserConfig {
    /// A user with a password (mysql_native_password), and no limits.
    pub fn with_password(name: &str, password: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            password: password.into(),
            password_hash: None,
            password_file: None,
            password_env: None,
            auth_plugin: None,
            credential: Credential::Password(password.into()),
            max_connections: None,
            databases: None,
            read_only: false,
        }
    }

    /// Sessions the user may have open at once (None: no limit).
    pub fn session_limit(&self, server: &ServerConfig) -> Option<usize> {
        match self.max_connections.unwrap_or(server.max_user_connections) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Redacts the password so that logging a config never leaks it.
impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("credential", &self.credential)
            .field("auth_plugin", &self.auth_plugin)
            .field("max_connections", &self.max_connections)
            .field("databases", &self.databases)
            .field("read_only", &self.read_only)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSourceConfig {
    /// The primary: all writes go here.
    pub url: BackendUrl,
    /// Read replicas of the primary.
    #[serde(default)]
    pub replicas: Vec<BackendUrl>,
    #[serde(default)]
    pub pool: PoolConfig,
    /// How reads are spread over the replicas.
    #[serde(default)]
    pub read: ReadConfig,
}

/// A replica-choosing strategy (SPEC.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceStrategy {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    ResponseTime,
    #[default]
    Adaptive,
}

/// Whether the primary serves reads besides the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryReads {
    /// Only when no replica is usable.
    #[default]
    Fallback,
    /// As one more candidate, always.
    Always,
}

/// What a read does when no replica is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFallback {
    #[default]
    Primary,
    Error,
}

/// Read/write splitting of one data source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    #[serde(default)]
    pub strategy: BalanceStrategy,
    /// For `weighted_round_robin`: one weight per replica, in order
    /// (default: 1 each).
    #[serde(default)]
    pub weights: Vec<u32>,
    #[serde(default)]
    pub primary_reads: PrimaryReads,
    #[serde(default)]
    pub fallback: ReadFallback,
    /// A replica further behind than this leaves the rotation.
    #[serde(default = "default_max_replica_lag_ms")]
    pub max_replica_lag_ms: u64,
    /// How often each replica's health and lag are measured.
    #[serde(default = "default_monitor_interval_ms")]
    pub monitor_interval_ms: u64,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            strategy: BalanceStrategy::default(),
            weights: Vec::new(),
            primary_reads: PrimaryReads::default(),
            fallback: ReadFallback::default(),
            max_replica_lag_ms: default_max_replica_lag_ms(),
            monitor_interval_ms: default_monitor_interval_ms(),
        }
    }
}

impl ReadConfig {
    /// The weight of replica `index`.
    pub fn weight(&self, index: usize) -> u32 {
        self.weights.get(index).copied().unwrap_or(1)
    }
}

/// How fresh a read from a replica must be (`server.read_consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadConsistency {
    /// Any replica in the rotation.
    Eventual,
    /// Never older than the session's own last write on that node.
    Session,
    /// Never older than any write this proxy acknowledged before the read
    /// began, from any session: an application's pool of connections reads
    /// what it wrote on any of them, as from one server.
    #[default]
    Proxy,
}

/// Where reads inside an explicit transaction go
/// (`server.transaction_reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionReads {
    #[default]
    Primary,
    /// One replica per data source for the whole read-only transaction.
    Replica,
}

/// How the connections of one data source (its primary, and each replica)
/// are pooled. Every field has a default (SPEC.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Connections in use at most, to start with; with `adaptive`, the
    /// pool then follows its peak demand within `min_size..=max_bound`.
    #[serde(default = "default_pool_max_size")]
    pub max_size: usize,
    /// Idle connections kept open once the pool is in use (default:
    /// `max_size / 4`).
    #[serde(default)]
    pub min_idle: Option<usize>,
    /// How long a statement waits for a connection before error 1040.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Resize to ceil(peak demand x 1.2) every `resize_interval_ms` when
    /// that differs from the current size by more than 5.
    #[serde(default = "default_true")]
    pub adaptive: bool,
    #[serde(default = "default_pool_min_size")]
    pub min_size: usize,
    #[serde(default = "default_pool_max_bound")]
    pub max_bound: usize,
    #[serde(default = "default_resize_interval_ms")]
    pub resize_interval_ms: u64,
    /// A connection idle longer than this is validated (`SELECT 1`) before
    /// it is handed out.
    #[serde(default = "default_validate_idle_ms")]
    pub validate_idle_ms: u64,
    /// Bound on one validation (checkout and health check).
    #[serde(default = "default_validation_timeout_ms")]
    pub validation_timeout_ms: u64,
    /// How often each data source is health-checked. A failed check marks
    /// it down: statements for it fail at once, the connections open to it
    /// are broken (statements waiting on it end with an error), and it is
    /// checked every second until it answers again.
    #[serde(default = "default_health_check_interval_ms")]
    pub health_check_interval_ms: u64,
    /// Bound on opening a connection and logging in.
    #[serde(default = "default_pool_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The longest the data source may stay silent while a statement waits
    /// for its answer (rows streaming in do not count against it); then
    /// the statement fails with an error naming the data source and the
    /// connection is closed. 0: no limit (long reports keep running).
    #[serde(default)]
    pub query_timeout_ms: u64,
}

impl PoolConfig {
    /// Idle connections to keep open.
    pub fn min_idle(&self) -> usize {
        self.min_idle.unwrap_or(self.max_size / 4)
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: default_pool_max_size(),
            min_idle: None,
            acquire_timeout_ms: default_acquire_timeout_ms(),
            adaptive: true,
            min_size: default_pool_min_size(),
            max_bound: default_pool_max_bound(),
            resize_interval_ms: default_resize_interval_ms(),
            validate_idle_ms: default_validate_idle_ms(),
            validation_timeout_ms: default_validation_timeout_ms(),
            health_check_interval_ms: default_health_check_interval_ms(),
            connect_timeout_ms: default_pool_connect_timeout_ms(),
            query_timeout_ms: 0,
        }
    }
}

/// When to raise an alert, and where to send it besides the log and the
/// metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// `http(s)://host:port/path` that receives each alert as a JSON POST
    /// (https verified against the system's trust store).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Active connections above this share of a pool's size ...
    #[serde(default = "default_pool_usage_ratio")]
    pub pool_usage_ratio: f64,
    /// ... for this long raise `pool_saturated`.
    #[serde(default = "default_pool_usage_sustain_ms")]
    pub pool_usage_sustain_ms: u64,
}

impl Eq for AlertConfig {}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhook: None,
            pool_usage_ratio: default_pool_usage_ratio(),
            pool_usage_sustain_ms: default_pool_usage_sustain_ms(),
        }
    }
}

/// One group of binding tables (`[[binding]] tables = ["a", "b"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub tables: Vec<String>,
}

/// Tables copied in full on every data source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastConfig {
    #[serde(default)]
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnowflakeConfig {
    pub epoch: Epoch,
    pub worker_id: WorkerId,
    /// How far the clock may step back before generation fails.
    pub max_clock_backward_ms: u64,
}

impl Default for SnowflakeConfig {
    fn default() -> Self {
        SnowflakeConfig {
            epoch: Epoch::DEFAULT,
            worker_id: WorkerId::default(),
            max_clock_backward_ms: DEFAULT_MAX_CLOCK_BACKWARD_MS,
        }
    }
}

const DEFAULT_MAX_CLOCK_BACKWARD_MS: u64 = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: ServerConfig,
    #[serde(default)]
    data_sources: BTreeMap<String, DataSourceConfig>,
    #[serde(default)]
    tables: BTreeMap<String, RawTableConfig>,
    #[serde(default)]
    broadcast: BroadcastConfig,
    #[serde(default)]
    binding: Vec<BindingConfig>,
    snowflake: Option<RawSnowflakeConfig>,
    #[serde(default)]
    alerts: AlertConfig,
    #[serde(default)]
    databases: BTreeMap<String, RawDatabaseConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabaseConfig {
    default_data_source: String,
    #[serde(default)]
    tables: BTreeMap<String, RawTableConfig>,
    #[serde(default)]
    broadcast: BroadcastConfig,
    #[serde(default)]
    binding: Vec<BindingConfig>,
}

/// Raw so that a bad epoch or worker id is reported with its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnowflakeConfig {
    epoch: Option<String>,
    #[serde(default)]
    worker_id: i64,
    #[serde(default = "default_max_clock_backward_ms")]
    max_clock_backward_ms: u64,
}

impl Config {
    /// Parses and validates a whole configuration file's text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::syntax(&e))?;
        let tables = tables_of(raw.tables, "")?;
        let databases = raw
            .databases
            .into_iter()
            .map(|(name, db)| {
                let tables = tables_of(db.tables, &format!("databases.{name}."))?;
                let db = DatabaseConfig {
                    default_data_source: db.default_data_source,
                    tables,
                    broadcast: db.broadcast,
                    binding: db.binding,
                };
                Ok((name, db))
            })
            .collect::<Result<_, ConfigError>>()?;
        let mut server = raw.server;
        for user in &mut server.users {
            user.resolve_credential()?;
        }
        let config = Config {
            server,
            data_sources: raw.data_sources,
            tables,
            broadcast: raw.broadcast,
            binding: raw.binding,
            snowflake: raw
                .snowflake
                .map(RawSnowflakeConfig::into_config)
                .transpose()?
                .unwrap_or_default(),
            alerts: raw.alerts,
            databases,
        };
        config.validate()?;
        Ok(config)
    }

    /// Every logical database's rules, the first (`server.database`) first.
    pub fn logical_databases(&self) -> Vec<DatabaseRules<'_>> {
        let first = DatabaseRules {
            name: &self.server.database,
            default_data_source: &self.server.default_data_source,
            tables: &self.tables,
            broadcast: &self.broadcast,
            binding: &self.binding,
            key_prefix: String::new(),
        };
        std::iter::once(first)
            .chain(self.databases.iter().map(|(name, db)| DatabaseRules {
                name,
                default_data_source: &db.default_data_source,
                tables: &db.tables,
                broadcast: &db.broadcast,
                binding: &db.binding,
                key_prefix: format!("databases.{name}."),
            }))
            .collect()
    }

    /// The data sources a logical database's broadcast tables are copied
    /// on: for the first, every data source no other logical database
    /// keeps its tables on; for another, its default data source and those
    /// of its sharded tables.
    pub fn database_data_sources(&self, db: &DatabaseRules<'_>) -> Vec<String> {
        if db.is_first() {
            let others: Vec<&str> = self
                .databases
                .values()
                .map(|d| d.default_data_source.as_str())
                .collect();
            return self
                .data_sources
                .keys()
                .filter(|ds| !others.contains(&ds.as_str()))
                .cloned()
                .collect();
        }
        let mut sources: Vec<String> = std::iter::once(db.default_data_source.to_owned())
            .chain(db.tables.values().flat_map(|t| {
                crate::inline::expand_data_nodes(&t.nodes)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.data_source)
            }))
            .collect();
        sources.sort();
        sources.dedup();
        sources
    }

    /// Checks what serde cannot: cross-references and value ranges. Table
    /// rules are checked by building them, so that what loads also routes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.users.is_empty() {
            return Err(ConfigError::invalid("server.users", Problem::Empty("user")));
        }
        if self.data_sources.is_empty() {
            return Err(ConfigError::invalid(
                "data_sources",
                Problem::Empty("data source"),
            ));
        }
        let server = &self.server;
        let at_least_one = [
            ("server.max_connections", server.max_connections == 0),
            ("server.max_connect_errors", server.max_connect_errors == 0),
            ("server.wait_timeout_ms", server.wait_timeout_ms == 0),
            (
                "server.max_prepared_statements",
                server.max_prepared_statements == 0,
            ),
        ];
        if let Some((key, _)) = at_least_one.into_iter().find(|(_, zero)| *zero) {
            let problem = Problem::OutOfRange {
                value: 0,
                range: "1..",
            };
            return Err(ConfigError::invalid(key, problem));
        }
        if server.require_secure_transport && server.tls.is_none() {
            return Err(ConfigError::invalid(
                "server.require_secure_transport",
                Problem::Requires("server.tls"),
            ));
        }
        // MariaDB's own range; statement positions are kept in 32 bits.
        if !(1024..=MAX_ALLOWED_PACKET).contains(&self.server.max_allowed_packet) {
            let problem = Problem::OutOfRange {
                value: i64::try_from(self.server.max_allowed_packet).unwrap_or(i64::MAX),
                range: "1024..=1073741824",
            };
            return Err(ConfigError::invalid("server.max_allowed_packet", problem));
        }
        if let Some(n) = self.server.worker_threads {
            if !(1..=MAX_WORKER_THREADS).contains(&n) {
                let problem = Problem::OutOfRange {
                    value: i64::try_from(n).unwrap_or(i64::MAX),
                    range: "1..=1024",
                };
                return Err(ConfigError::invalid("server.worker_threads", problem));
            }
        }
        for (name, source) in &self.data_sources {
            let pool = &source.pool;
            for (key, value) in [
                ("max_size", pool.max_size),
                ("min_size", pool.min_size),
                ("max_bound", pool.max_bound),
            ] {
                if value == 0 {
                    let problem = Problem::OutOfRange {
                        value: 0,
                        range: "1..",
                    };
                    return Err(ConfigError::invalid(
                        format!("data_sources.{name}.pool.{key}"),
                        problem,
                    ));
                }
            }
            let read = &source.read;
            if !read.weights.is_empty() && read.weights.len() != source.replicas.len() {
                let problem = Problem::BadValue {
                    value: format!("{:?}", read.weights),
                    reason: format!(
                        "expected one weight per replica ({} replicas)",
                        source.replicas.len()
                    ),
                };
                return Err(ConfigError::invalid(
                    format!("data_sources.{name}.read.weights"),
                    problem,
                ));
            }
            if read.weights.contains(&0) {
                let problem = Problem::BadValue {
                    value: format!("{:?}", read.weights),
                    reason: "weights must be at least 1".into(),
                };
                return Err(ConfigError::invalid(
                    format!("data_sources.{name}.read.weights"),
                    problem,
                ));
            }
            if pool.min_size > pool.max_bound {
                let problem = Problem::BadValue {
                    value: pool.min_size.to_string(),
                    reason: format!("min_size must not exceed max_bound ({})", pool.max_bound),
                };
                return Err(ConfigError::invalid(
                    format!("data_sources.{name}.pool.min_size"),
                    problem,
                ));
            }
        }
        if !(self.alerts.pool_usage_ratio > 0.0 && self.alerts.pool_usage_ratio <= 1.0) {
            let problem = Problem::BadValue {
                value: self.alerts.pool_usage_ratio.to_string(),
                reason: "expected a share of the pool size in (0, 1]".into(),
            };
            return Err(ConfigError::invalid("alerts.pool_usage_ratio", problem));
        }
        if let Some(url) = &self.alerts.webhook {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                let problem = Problem::BadValue {
                    value: url.clone(),
                    reason: "expected an http:// or https:// URL".into(),
                };
                return Err(ConfigError::invalid("alerts.webhook", problem));
            }
        }
        let mut defaults: BTreeMap<&str, &str> = BTreeMap::new();
        for db in self.logical_databases() {
            let key = db.default_data_source_key();
            if db.name.is_empty() {
                return Err(ConfigError::invalid(key, Problem::Empty("database name")));
            }
            if let Some(other) = defaults.insert(db.default_data_source, db.name) {
                let problem = Problem::BadValue {
                    value: db.default_data_source.to_owned(),
                    reason: format!(
                        "logical database '{other}' keeps its tables there too: give each logical database a data source of its own (a URL with its own physical database)"
                    ),
                };
                return Err(ConfigError::invalid(key, problem));
            }
            if !db.is_first() && db.name == self.server.database {
                let problem = Problem::BadValue {
                    value: db.name.to_owned(),
                    reason: "it is server.database already".into(),
                };
                return Err(ConfigError::invalid(
                    format!("databases.{}", db.name),
                    problem,
                ));
            }
            ShardingRules::for_database(self, &db)?;
        }
        self.validate_user_databases()
    }

    /// Each user's `databases` names logical databases only, at least one.
    fn validate_user_databases(&self) -> Result<(), ConfigError> {
        let declared = self.logical_databases();
        for (i, user) in self.server.users.iter().enumerate() {
            let Some(names) = &user.databases else {
                continue;
            };
            let key = format!("server.users[{i}].databases");
            if names.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    Problem::Empty("logical database"),
                ));
            }
            if let Some(unknown) = names
                .iter()
                .find(|n| !declared.iter().any(|d| d.name == *n))
            {
                let problem = Problem::BadValue {
                    value: unknown.clone(),
                    reason: format!(
                        "user '{}' may only be given logical databases (declared: {})",
                        user.name,
                        declared
                            .iter()
                            .map(|d| d.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(ConfigError::invalid(key, problem));
            }
        }
        Ok(())
    }
}

/// The tables of a `[tables]` section, whose keys start with `prefix`.
fn tables_of(
    raw: BTreeMap<String, RawTableConfig>,
    prefix: &str,
) -> Result<BTreeMap<String, TableConfig>, ConfigError> {
    raw.into_iter()
        .map(|(name, table)| {
            let table = table.into_table(&format!("{prefix}tables.{name}"))?;
            Ok((name, table))
        })
        .collect()
}

impl RawSnowflakeConfig {
    fn into_config(self) -> Result<SnowflakeConfig, ConfigError> {
        let epoch = match self.epoch {
            None => Epoch::DEFAULT,
            Some(text) => parse_utc_millis(&text)
                .ok()
                .and_then(|millis| u64::try_from(millis).ok())
                .map(Epoch::from_unix_millis)
                .ok_or_else(|| {
                    let reason = "expected an RFC 3339 UTC instant at or after 1970, like 2024-01-01T00:00:00Z";
                    ConfigError::invalid("snowflake.epoch", Problem::BadValue { value: text, reason: reason.into() })
                })?,
        };
        let worker_id = u16::try_from(self.worker_id)
            .ok()
            .and_then(WorkerId::new)
            .ok_or_else(|| {
                let problem = Problem::OutOfRange {
                    value: self.worker_id,
                    range: "0..=1023",
                };
                ConfigError::invalid("snowflake.worker_id", problem)
            })?;
        Ok(SnowflakeConfig {
            epoch,
            worker_id,
            max_clock_backward_ms: self.max_clock_backward_ms,
        })
    }
}

fn default_mysql_listen() -> String {
    "127.0.0.1:3307".to_string()
}

fn default_admin_listen() -> String {
    "127.0.0.1:9797".to_string()
}

fn default_data_source() -> String {
    "ds0".to_string()
}

/// Most threads `server.worker_threads` may ask for.
const MAX_WORKER_THREADS: usize = 1024;

/// The largest `server.max_allowed_packet`: 1 GiB, MariaDB's largest.
const MAX_ALLOWED_PACKET: usize = 1 << 30;

fn default_max_allowed_packet() -> usize {
    64 * 1024 * 1024
}

fn default_pool_max_size() -> usize {
    20
}

fn default_acquire_timeout_ms() -> u64 {
    5_000
}

fn default_max_connections() -> usize {
    4096
}

/// Two parameters of the largest packet's size.
fn default_max_long_data_per_session() -> usize {
    2 * default_max_allowed_packet()
}

/// MariaDB's `max_prepared_stmt_count` default.
fn default_max_prepared_statements() -> usize {
    16_382
}

/// MariaDB's `max_connect_errors` default.
fn default_max_connect_errors() -> u32 {
    100
}

/// Five minutes: long enough to make guessing passwords slow, short enough
/// that a client whose password was fixed is not locked out for long.
fn default_host_block_ms() -> u64 {
    5 * 60 * 1000
}

/// MariaDB's `wait_timeout` default, 8 hours.
fn default_wait_timeout_ms() -> u64 {
    8 * 3600 * 1000
}

/// MariaDB's `connect_timeout` default, 10 s.
fn default_connect_timeout_ms() -> u64 {
    10_000
}

fn default_max_replica_lag_ms() -> u64 {
    5_000
}

fn default_monitor_interval_ms() -> u64 {
    1_000
}

fn default_true() -> bool {
    true
}

fn default_pool_min_size() -> usize {
    10
}

fn default_pool_max_bound() -> usize {
    100
}

fn default_resize_interval_ms() -> u64 {
    5 * 60 * 1_000
}

fn default_validate_idle_ms() -> u64 {
    30_000
}

fn default_validation_timeout_ms() -> u64 {
    5_000
}

/// Often enough that a data source that stops answering is marked down
/// within a few seconds (with `validation_timeout_ms`); a `SELECT 1` every
/// 2 s per pool costs its server nothing.
fn default_health_check_interval_ms() -> u64 {
    2_000
}

fn default_pool_connect_timeout_ms() -> u64 {
    5_000
}

fn default_pool_usage_ratio() -> f64 {
    0.9
}

fn default_pool_usage_sustain_ms() -> u64 {
    30_000
}

fn default_max_clock_backward_ms() -> u64 {
    DEFAULT_MAX_CLOCK_BACKWARD_MS
}

#[cfg(test)]
mod tests;
