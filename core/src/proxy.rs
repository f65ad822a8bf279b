//! The running proxy's state, whatever protocol its clients speak: one
//! version of the configuration and what is built from it ([`Shared`]:
//! pools, replicas, logical databases, keys), swapped whole on reload, and
//! what outlives versions ([`Proxy`]: pauses, sessions, staged rules, read
//! watermarks, the pools' background care).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use shardgate_rules::config::{BackendUrl, Config};
use shardgate_rules::{SnowflakeGenerator, SystemClock};
use tokio::task::JoinHandle;

use crate::admission::Admission;
use crate::alerts::Alerts;
use crate::backend::{Backend, Pool, PoolContext, Role};
use crate::databases::LogicalDatabase;
use crate::metrics::Metrics;
use crate::pause::Pauses;
use crate::replica::watermark::Watermarks;
use crate::replica::ReadRouter;
use crate::sessions::Sessions;
use crate::staging::Staged;

/// Why a configuration version could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("default data source '{0}' is not a data source")]
    NoDefaultDataSource(String),
    #[error("invalid sharding rules: {0}")]
    Rules(#[from] shardgate_rules::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What every session shares: one version of the configuration and what
/// is built from it. A reload builds a new one (reusing unchanged pools);
/// sessions move to it between transactions.
pub struct Shared<B: Backend> {
    /// 1 at start, +1 per reload.
    pub version: u64,
    pub config: Arc<Config>,
    /// The primary's pool of each data source, by data source name.
    pub pools: BTreeMap<String, Arc<Pool<B::Conn>>>,
    /// The replicas' pools of each data source, in configuration order.
    pub replicas: BTreeMap<String, Vec<Arc<Pool<B::Conn>>>>,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<Alerts>,
    /// The logical databases, `server.database` first.
    pub databases: Vec<Arc<LogicalDatabase<B>>>,
    /// Kept across reloads unless `[snowflake]` changes, so ids stay unique.
    pub keys: Arc<SnowflakeGenerator>,
    pub reads: ReadRouter,
    /// What clients negotiate TLS with (`server.tls`), read from its files
    /// when this version was built.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// What the admin HTTP listener serves HTTPS with (`server.admin_tls`),
    /// read from its files when this version was built.
    pub admin_tls: Option<tokio_rustls::TlsAcceptor>,
}

impl<B: Backend> Shared<B> {
    /// The first logical database (`server.database`).
    pub fn first_database(&self) -> &Arc<LogicalDatabase<B>> {
        &self.databases[0]
    }

    /// The logical database a client names, if the proxy serves it.
    pub fn database(&self, name: &str) -> Option<&Arc<LogicalDatabase<B>>> {
        self.databases.iter().find(|db| db.name == name)
    }

    /// The pool of a data source named by the rules.
    pub fn pool(&self, data_source: &str) -> Option<&Arc<Pool<B::Conn>>> {
        self.pools.get(data_source)
    }

    /// Every pool: primaries and replicas, by data source.
    pub fn all_pools(&self) -> impl Iterator<Item = &Arc<Pool<B::Conn>>> {
        self.pools.iter().flat_map(move |(name, primary)| {
            std::iter::once(primary).chain(self.replicas.get(name).into_iter().flatten())
        })
    }

    /// A pool by its name (`ds0`, `ds0.replica1`).
    pub fn pool_named(&self, name: &str) -> Option<&Arc<Pool<B::Conn>>> {
        self.all_pools().find(|p| p.name() == name)
    }
}

/// The proxy's current configuration version, swapped whole on reload,
/// and what outlives versions.
pub struct Proxy<B: Backend> {
    current: ArcSwap<Shared<B>>,
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
    /// Sessions per user and failed logins per host.
    admission: Arc<Admission>,
    /// The configuration staged to become the next version.
    staged: Mutex<Option<Staged>>,
    /// What reads must see of the writes this proxy acknowledged.
    watermarks: Arc<Watermarks<<B::Conn as crate::backend::Connection>::Position>>,
}

impl<B: Backend> Proxy<B> {
    /// A proxy serving `shared` (its first version), its pools cared for.
    /// `config_path`: the file `reload` re-reads.
    pub fn new(
        shared: Shared<B>,
        config_path: Option<PathBuf>,
        context: Arc<PoolContext>,
    ) -> Arc<Self> {
        let shared = Arc::new(shared);
        let proxy = Arc::new(Proxy {
            current: ArcSwap::from(shared.clone()),
            config_path,
            context,
            next_connection_id: AtomicU32::new(1),
            tasks: Mutex::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
            pauses: Arc::new(Pauses::new(shared.metrics.clone())),
            sessions: Arc::default(),
            admission: Arc::default(),
            staged: Mutex::new(None),
            watermarks: Arc::default(),
        });
        proxy.install(shared);
        proxy
    }

    /// The configuration version new statements use.
    pub fn current(&self) -> Arc<Shared<B>> {
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

    /// Sessions per user and failed logins per host (who may log in).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The write watermarks of the data sources (`read_consistency = "proxy"`).
    pub fn watermarks(
        &self,
    ) -> &Arc<Watermarks<<B::Conn as crate::backend::Connection>::Position>> {
        &self.watermarks
    }

    pub(crate) fn staged_slot(&self) -> std::sync::MutexGuard<'_, Option<Staged>> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `shared` current and gives its pools their background care
    /// (health checks, resizing, replica monitors), ending the previous
    /// version's.
    pub fn install(&self, shared: Arc<Shared<B>>) {
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

    /// Ends the pools' background care (the proxy is stopping).
    pub fn stop_care(&self) {
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
fn spawn_care<B: Backend>(shared: &Shared<B>) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = shared
        .all_pools()
        .map(|pool| {
            crate::backend::maintenance::spawn(
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
            tasks.push(crate::replica::monitor::spawn(
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
pub fn build_shared<B: Backend>(
    config: Config,
    version: u64,
    previous: Option<&Shared<B>>,
    context: &Arc<PoolContext>,
    metrics: Arc<Metrics>,
    alerts: Arc<Alerts>,
) -> Result<Shared<B>, BuildError> {
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
        let of_ds: Vec<Arc<Pool<B::Conn>>> = ds
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
            .ok_or_else(|| BuildError::NoDefaultDataSource(db.default_data_source.to_owned()))?;
        databases.push(Arc::new(built));
    }
    let keys = match previous {
        Some(p) if p.config.snowflake == config.snowflake => p.keys.clone(),
        _ => Arc::new(SnowflakeGenerator::new(&config.snowflake, SystemClock)),
    };
    let reads = ReadRouter::new(&config);
    let tls = config
        .server
        .tls
        .as_ref()
        .map(|files| crate::tls::acceptor("server.tls", files))
        .transpose()?;
    let admin_tls = config
        .server
        .admin_tls
        .as_ref()
        .map(|files| crate::tls::acceptor("server.admin_tls", files))
        .transpose()?;
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
        tls,
        admin_tls,
    })
}
