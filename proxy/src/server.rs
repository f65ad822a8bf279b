//! Starting the proxy: the core's state over MariaDB data sources, the
//! admin API and the MySQL front end's listener, bound and served in the
//! background; and stopping them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use shardgate_core::alerts::Alerts;
use shardgate_core::metrics::Metrics;
use shardgate_core::proxy::{build_shared, BuildError};
use shardgate_rules::config::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use shardgate_mysql::backend::PoolContext;
pub use shardgate_mysql::backend::Proxy;
use shardgate_mysql::listener::{accept_loop, probe_identity};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the admin API listens on {0}, beyond loopback: set server.admin_token so that it asks for a bearer token")]
    AdminTokenRequired(SocketAddr),
    #[error("{0}")]
    Config(Box<shardgate_core::reload::ReloadError>),
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
    shardgate_core::reload::read_config(path).map_err(|e| StartError::Config(Box::new(e)))
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
            BuildError::NoDefaultDataSource(config.server.default_data_source.clone())
        })?;
    let identity = probe_identity(&default_url).await;
    let shared = build_shared(config, 1, None, &context, metrics, alerts)?;
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
        shardgate_core::admin::bind(&admin_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: admin_listen,
                source,
            })?;
    if !admin_addr.ip().is_loopback() && shared.config.server.admin_token.is_none() {
        return Err(StartError::AdminTokenRequired(admin_addr));
    }
    let proxy = Proxy::new(shared, config_path, context);
    info!(%mysql_addr, %admin_addr, "ShardGate listening (MySQL protocol, admin HTTP)");
    let admin = shardgate_core::admin::serve(admin_listener, proxy.clone());
    let accept = tokio::spawn(accept_loop(listener, proxy.clone(), identity));
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
    let Some(pauses) = proxy.upgrade().map(|p| p.pauses().clone()) else {
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
