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

use crate::backend::Pool;
use crate::wire::handshake::ServerIdentity;
use crate::wire::packet::PacketReader;

/// What every session shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
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
    #[error("invalid sharding rules: {0}")]
    Rules(#[from] shardgate_rules::ConfigError),
}

/// A proxy running in this process.
pub struct RunningProxy {
    mysql_addr: SocketAddr,
    admin_addr: SocketAddr,
    accept: JoinHandle<()>,
    admin: JoinHandle<()>,
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

    /// Stops accepting clients; sessions already open run to their end.
    pub fn stop(self) {
        self.accept.abort();
        self.admin.abort();
    }
}

/// Binds the listener and serves clients in the background.
pub async fn start(config: Config) -> Result<RunningProxy, StartError> {
    let config = Arc::new(config);
    let pools: BTreeMap<String, Arc<Pool>> = config
        .data_sources
        .iter()
        .map(|(name, ds)| {
            let pool = Pool::new(
                name,
                ds.url.clone(),
                ds.pool.max_size,
                Duration::from_millis(ds.pool.acquire_timeout_ms),
            );
            (name.clone(), pool)
        })
        .collect();
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
    info!(%mysql_addr, %admin_addr, "ShardGate listening (MySQL protocol, admin HTTP)");
    let admin = crate::admin::serve(admin_listener, shared.clone());
    let accept = tokio::spawn(accept_loop(listener, shared));
    Ok(RunningProxy {
        mysql_addr,
        admin_addr,
        accept,
        admin,
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
