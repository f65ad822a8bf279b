//! Starting the proxy: the pools, what the proxy says about itself in its
//! greeting, and the accept loop that hands each client to a session.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakePacket;
use shardgate_rules::config::{BackendUrl, Config};
use shardgate_rules::{ShardingRules, SnowflakeGenerator, SystemClock};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::alerts::Alerts;
use crate::backend::{Pool, PoolContext, Role};
use crate::metrics::Metrics;
use crate::wire::handshake::ServerIdentity;
use crate::wire::packet::PacketReader;

/// What every session shares.
pub struct Shared {
    pub config: Arc<Config>,
    /// The primary's pool of each data source, by data source name.
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// The replicas' pools of each data source, in configuration order.
    pub replicas: BTreeMap<String, Vec<Arc<Pool>>>,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<Alerts>,
    /// Where statements on unsharded tables go.
    pub default_pool: Arc<Pool>,
    pub rules: ShardingRules,
    pub keys: SnowflakeGenerator,
    pub metadata: crate::shard::metadata::MetadataNames,
    /// Column order of sharded tables, learnt for INSERTs without a column
    /// list; forgotten when DDL changes the table.
    pub table_columns: std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<String>>>>,
    pub identity: ServerIdentity,
    next_connection_id: AtomicU32,
}

impl Shared {
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

    pub fn next_connection_id(&self) -> u32 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server.default_data_source '{0}' is not a data source")]
    NoDefaultDataSource(String),
    #[error("the admin API listens on {0}, beyond loopback: set server.admin_token so that it asks for a bearer token")]
    AdminTokenRequired(SocketAddr),
    #[error("invalid sharding rules: {0}")]
    Rules(#[from] shardgate_rules::ConfigError),
}

/// A proxy running in this process.
pub struct RunningProxy {
    mysql_addr: SocketAddr,
    admin_addr: SocketAddr,
    accept: JoinHandle<()>,
    admin: JoinHandle<()>,
    maintenance: Vec<JoinHandle<()>>,
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
        for task in &self.maintenance {
            task.abort();
        }
    }
}

/// Binds the listener and serves clients in the background.
pub async fn start(config: Config) -> Result<RunningProxy, StartError> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let alerts = Alerts::new(metrics.clone(), config.alerts.webhook.clone());
    let context = PoolContext::new(metrics.clone());
    let mut pools = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    for (name, ds) in &config.data_sources {
        let primary = Pool::new(
            name,
            name,
            Role::Primary,
            ds.url.clone(),
            ds.pool.clone(),
            context.clone(),
        );
        pools.insert(name.clone(), primary);
        let of_ds: Vec<Arc<Pool>> = ds
            .replicas
            .iter()
            .enumerate()
            .map(|(i, url)| {
                Pool::new(
                    &format!("{name}.replica{}", i + 1),
                    name,
                    Role::Replica(i),
                    url.clone(),
                    ds.pool.clone(),
                    context.clone(),
                )
            })
            .collect();
        replicas.insert(name.clone(), of_ds);
    }
    let default_name = &config.server.default_data_source;
    let default_pool = pools
        .get(default_name)
        .cloned()
        .ok_or_else(|| StartError::NoDefaultDataSource(default_name.clone()))?;
    let rules = ShardingRules::new(&config)?;
    let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
    let metadata = crate::shard::metadata::MetadataNames::new(&config, &rules);
    let identity = probe_identity(default_pool.url()).await;
    let listen = config.server.mysql_listen.clone();
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
    let shared = Arc::new(Shared {
        config,
        pools,
        replicas,
        metrics,
        alerts,
        default_pool,
        rules,
        keys,
        metadata,
        table_columns: std::sync::Mutex::default(),
        identity,
        next_connection_id: AtomicU32::new(1),
    });
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
    info!(%mysql_addr, %admin_addr, "ShardGate listening (MySQL protocol, admin HTTP)");
    let admin = crate::admin::serve(admin_listener, shared.clone());
    let mut maintenance: Vec<JoinHandle<()>> = shared
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
        let read = &shared.config.data_sources[name].read;
        for replica in replicas {
            maintenance.push(crate::replica::monitor::spawn(
                replica.clone(),
                read.clone(),
                shared.metrics.clone(),
            ));
        }
    }
    let accept = tokio::spawn(accept_loop(listener, shared));
    Ok(RunningProxy {
        mysql_addr,
        admin_addr,
        accept,
        admin,
        maintenance,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(crate::session::serve(shared.clone(), stream));
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
