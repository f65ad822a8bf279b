//! Starting the proxy: the configuration version sessions share (pools,
//! rules), what the proxy says about itself in its greeting, and the
//! accept loop that hands each client to a session.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakePacket;
use shardgate_rules::config::{BackendUrl, Config};
use shardgate_rules::{SnowflakeGenerator, SystemClock};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::backend::{Pool, PoolContext, Role, Watermarks};
use crate::databases::LogicalDatabase;
use crate::pause::Pauses;
use crate::sessions::Sessions;
use crate::staging::Staged;
use shardgate_core::alerts::Alerts;
use shardgate_core::metrics::Metrics;
use shardgate_core::replica::ReadRouter;
use shardgate_mysql::handshake::ServerIdentity;
use shardgate_mysql::packet::PacketReader;

/// What every session shares: one version of the configuration and what
/// is built from it. A reload builds a new one (reusing unchanged pools);
/// sessions move to it between transactions.
pub struct Shared {
    /// 1 at start, +1 per reload.
    pub version: u64,
    pub config: Arc<Config>,
    /// The primary's pool of each data source, by data source name.
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// The replicas' pools of each data source, in configuration order.
    pub replicas: BTreeMap<String, Vec<Arc<Pool>>>,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<Alerts>,
    /// The logical databases, `server.database` first.
    pub databases: Vec<Arc<LogicalDatabase>>,
    /// Kept across reloads unless `[snowflake]` changes, so ids stay unique.
    pub keys: Arc<SnowflakeGenerator>,
    pub reads: ReadRouter,
    pub identity: ServerIdentity,
}

impl Shared {
    /// The first logical database (`server.database`).
    pub fn first_database(&self) -> &Arc<LogicalDatabase> {
        &self.databases[0]
    }

    /// The logical database a client names, if the proxy serves it.
    pub fn database(&self, name: &str) -> Option<&Arc<LogicalDatabase>> {
        self.databases.iter().find(|db| db.name == name)
    }

    /// The pool of a data source named by the rules.
    pub fn pool(&self, data_source: &str) -> Option<&Arc<Pool>> {
        self.pools.get(data_source)
    }

    /// Every pool: primaries and replicas, by data source.
    pub fn all_pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.iter().flat_map(move |(name, primary)| {
            std::iter::once(primary).chain(self.replicas.get(name).into_iter().flatten())
        })
    }

    /// A pool by its name (`ds0`, `ds0.replica1`).
    pub fn pool_named(&self, name: &str) -> Option<&Arc<Pool>> {
        self.all_pools().find(|p| p.name() == name)
    }
}

/// The proxy's current configuration version, swapped whole on reload,
/// and what outlives versions.
pub struct Proxy {
    current: ArcSwap<Shared>,
    /// The file `reload` re-reads (None: started from a config value).
    config_path: Option<PathBuf>,
    context: Arc<PoolContext>,
    next_connection_id: AtomicU32,
    /// The background tasks of the current version's pools.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// One reload (or staging, or activation) at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Tables paused for a cutover; they outlive rules versions.
    pauses: Arc<Pauses>,
    sessions: Arc<Sessions>,
    /// The configuration staged to become the next version.
    staged: Mutex<Option<Staged>>,
    /// What reads must see of the writes this proxy acknowledged.
    watermarks: Arc<Watermarks>,
}

impl Proxy {
    /// The configuration version new statements use.
    pub fn current(&self) -> Arc<Shared> {
        self.current.load_full()
    }

    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    pub fn next_connection_id(&self) -> u32 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn context(&self) -> &Arc<PoolContext> {
        &self.context
    }

    /// The tables paused for a cutover.
    pub fn pauses(&self) -> &Arc<Pauses> {
        &self.pauses
    }

    /// The logged-in client sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The write watermarks of the data sources (`read_consistency = "proxy"`).
    pub fn watermarks(&self) -> &Arc<Watermarks> {
        &self.watermarks
    }

    pub(crate) fn staged_slot(&self) -> std::sync::MutexGuard<'_, Option<Staged>> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `shared` current and gives its pools their background care
    /// (health checks, resizing, replica monitors), ending the previous
    /// version's.
    pub(crate) fn install(&self, shared: Arc<Shared>) {
        let tasks = spawn_care(&shared);
        shared.metrics.rules_version(shared.version);
        self.current.store(shared);
        let old = std::mem::replace(
            &mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()),
            tasks,
        );
        for task in old {
            task.abort();
        }
    }

    pub(crate) async fn reload_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reloading.lock().await
    }

    fn stop_care(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The background tasks of every pool of `shared`.
fn spawn_care(shared: &Shared) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = shared
        .all_pools()
        .map(|pool| {
            shardgate_core::backend::maintenance::spawn(
                pool.clone(),
                shared.alerts.clone(),
                shared.config.alerts.clone(),
            )
        })
        .collect();
    for (name, replicas) in &shared.replicas {
        let Some(ds) = shared.config.data_sources.get(name) else {
            continue;
        };
        let Some(primary) = shared.pools.get(name) else {
            continue;
        };
        for replica in replicas {
            tasks.push(shardgate_core::replica::monitor::spawn(
                replica.clone(),
                primary.clone(),
                ds.read.clone(),
                shared.metrics.clone(),
            ));
        }
    }
    tasks
}

/// Builds a configuration version: pools of `previous` are reused where
/// their server and settings did not change, so a reload neither drops
/// idle connections nor disturbs statements running on them.
pub(crate) fn build_shared(
    config: Config,
    version: u64,
    previous: Option<&Shared>,
    context: &Arc<PoolContext>,
    metrics: Arc<Metrics>,
    alerts: Arc<Alerts>,
    identity: ServerIdentity,
) -> Result<Shared, StartError> {
    let config = Arc::new(config);
    let reuse = |name: &str, url: &BackendUrl, pool: &shardgate_rules::config::PoolConfig| {
        previous
            .and_then(|p| p.pool_named(name))
            .filter(|p| p.url() == url && p.config() == pool)
            .cloned()
    };
    let mut pools = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    for (name, ds) in &config.data_sources {
        let primary = reuse(name, &ds.url, &ds.pool).unwrap_or_else(|| {
            Pool::new(
                name,
                name,
                Role::Primary,
                ds.url.clone(),
                ds.pool.clone(),
                context.clone(),
            )
        });
        pools.insert(name.clone(), primary);
        let of_ds: Vec<Arc<Pool>> = ds
            .replicas
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let pool_name = format!("{name}.replica{}", i + 1);
                reuse(&pool_name, url, &ds.pool).unwrap_or_else(|| {
                    Pool::new(
                        &pool_name,
                        name,
                        Role::Replica(i),
                        url.clone(),
                        ds.pool.clone(),
                        context.clone(),
                    )
                })
            })
            .collect();
        replicas.insert(name.clone(), of_ds);
    }
    let mut databases = Vec::new();
    for db in config.logical_databases() {
        let built = LogicalDatabase::new(&config, &db, &pools)?
            .ok_or_else(|| StartError::NoDefaultDataSource(db.default_data_source.to_owned()))?;
        databases.push(Arc::new(built));
    }
    let keys = match previous {
        Some(p) if p.config.snowflake == config.snowflake => p.keys.clone(),
        _ => Arc::new(SnowflakeGenerator::new(&config.snowflake, SystemClock)),
    };
    let reads = ReadRouter::new(&config);
    Ok(Shared {
        version,
        config,
        pools,
        replicas,
        metrics,
        alerts,
        databases,
        keys,
        reads,
        identity,
    })
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("default data source '{0}' is not a data source")]
    NoDefaultDataSource(String),
    #[error("the admin API listens on {0}, beyond loopback: set server.admin_token so that it asks for a bearer token")]
    AdminTokenRequired(SocketAddr),
    #[error("{0}")]
    Config(Box<crate::reload::ReloadError>),
    #[error("invalid sharding rules: {0}")]
    Rules(#[from] shardgate_rules::ConfigError),
}

/// A proxy running in this process.
pub struct RunningProxy {
    mysql_addr: SocketAddr,
    admin_addr: SocketAddr,
    accept: JoinHandle<()>,
    admin: JoinHandle<()>,
    /// Lifts pauses whose lease ended.
    leases: JoinHandle<()>,
    proxy: Arc<Proxy>,
}

impl RunningProxy {
    /// Where the MySQL protocol listener is bound.
    pub fn mysql_addr(&self) -> SocketAddr {
        self.mysql_addr
    }

    /// Where the admin HTTP listener is bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The running proxy's configuration versions (reload, current rules).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Stops accepting clients, the admin API and the pools' background
    /// care; sessions already open run to their end.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.admin.abort();
        self.leases.abort();
        self.proxy.stop_care();
    }
}

/// Binds the listener and serves clients in the background.
pub async fn start(config: Config) -> Result<RunningProxy, StartError> {
    start_with(config, None).await
}

/// Like [`start`], from a configuration file that `POST /api/reload` and
/// SIGHUP re-read.
pub async fn start_from_file(path: &std::path::Path) -> Result<RunningProxy, StartError> {
    let config = read_config_file(path)?;
    start_from_read_file(config, path).await
}

/// Reads and validates the configuration file `start_from_file` starts
/// from (the binary reads it before building its runtime).
pub fn read_config_file(path: &std::path::Path) -> Result<Config, StartError> {
    crate::reload::read_config(path).map_err(|e| StartError::Config(Box::new(e)))
}

/// [`start_from_file`] with the file's config already read.
pub async fn start_from_read_file(
    config: Config,
    path: &std::path::Path,
) -> Result<RunningProxy, StartError> {
    start_with(config, Some(path.to_path_buf())).await
}

async fn start_with(
    config: Config,
    config_path: Option<PathBuf>,
) -> Result<RunningProxy, StartError> {
    let metrics = Arc::new(Metrics::new());
    let alerts = Alerts::new(metrics.clone(), config.alerts.webhook.clone());
    let context = PoolContext::new(metrics.clone());
    let default_url = config
        .data_sources
        .get(&config.server.default_data_source)
        .map(|ds| ds.url.clone())
        .ok_or_else(|| {
            StartError::NoDefaultDataSource(config.server.default_data_source.clone())
        })?;
    let identity = probe_identity(&default_url).await;
    let shared = build_shared(config, 1, None, &context, metrics, alerts, identity)?;
    let listen = shared.config.server.mysql_listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen.clone(),
            source,
        })?;
    let mysql_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: listen.clone(),
        source,
    })?;
    let admin_listen = shared.config.server.admin_listen.clone();
    let (admin_listener, admin_addr) =
        crate::admin::bind(&admin_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: admin_listen,
                source,
            })?;
    if !admin_addr.ip().is_loopback() && shared.config.server.admin_token.is_none() {
        return Err(StartError::AdminTokenRequired(admin_addr));
    }
    let shared = Arc::new(shared);
    let pauses = Arc::new(Pauses::new(shared.metrics.clone()));
    let proxy = Arc::new(Proxy {
        current: ArcSwap::from(shared.clone()),
        config_path,
        context,
        next_connection_id: AtomicU32::new(1),
        tasks: Mutex::new(Vec::new()),
        reloading: tokio::sync::Mutex::new(()),
        pauses,
        sessions: Arc::default(),
        staged: Mutex::new(None),
        watermarks: Arc::default(),
    });
    proxy.install(shared);
    info!(%mysql_addr, %admin_addr, "ShardGate listening (MySQL protocol, admin HTTP)");
    let admin = crate::admin::serve(admin_listener, proxy.clone());
    let accept = tokio::spawn(accept_loop(listener, proxy.clone()));
    let leases = tokio::spawn(keep_pause_leases(Arc::downgrade(&proxy)));
    Ok(RunningProxy {
        mysql_addr,
        admin_addr,
        accept,
        admin,
        leases,
        proxy,
    })
}

/// Lifts pauses whose lease ended, with an alert: the migrator that asked
/// for them stopped renewing them (it died, or lost its way).
async fn keep_pause_leases(proxy: std::sync::Weak<Proxy>) {
    let Some(pauses) = proxy.upgrade().map(|p| p.pauses.clone()) else {
        return;
    };
    pauses
        .keep_leases(|table, terms| {
            let message = format!(
                "the pause of table `{table}` was neither renewed nor resumed within its lease of {} ms: lifted, statements on it run again",
                terms.lease.as_millis()
            );
            match proxy.upgrade() {
                Some(proxy) => proxy.current().alerts.fire("pause_lease_expired", table, message),
                None => warn!("{message}"),
            }
        })
        .await;
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(crate::session::serve(proxy.clone(), stream));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The default data source's version and collation, so clients see the
/// server they are really talking to; a fixed MariaDB identity when it is
/// not reachable at start.
async fn probe_identity(url: &BackendUrl) -> ServerIdentity {
    let fallback = ServerIdentity {
        version: "10.11.0-MariaDB-ShardGate".into(),
        collation: 45,
    };
    let addr = format!("{}:{}", url.host, url.port);
    let greeting = async {
        let stream = TcpStream::connect(&addr).await.ok()?;
        let mut reader = PacketReader::new(stream);
        let (_, payload) = reader.read_packet(64 * 1024).await.ok()?;
        let packet: HandshakePacket<'_> = ParseBuf(&payload).parse(()).ok()?;
        Some(ServerIdentity {
            version: packet.server_version_str().into_owned(),
            collation: packet.default_collation(),
        })
    };
    match tokio::time::timeout(Duration::from_secs(5), greeting).await {
        Ok(Some(identity)) => identity,
        _ => {
            warn!(%addr, "default data source not reachable at start; greeting clients as {}", fallback.version);
            fallback
        }
    }
}
