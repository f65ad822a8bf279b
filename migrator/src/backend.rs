//! Connections to the data sources of both configurations: one pool per
//! primary (a data source named in both must be the same server and
//! database), the replicas for throttling, and the primaries' binlog
//! positions.
//!
//! Each connection is encrypted as its data source's URL says
//! ([`ssl_opts`]), the change streams' too (they take these options).
//!
//! Every pooled session runs in UTC ([`WRITE_TIME_ZONE`]): the change
//! stream gives TIMESTAMP values in UTC, and the copy, the applied changes
//! and verification must all read and write them in the same zone.

use crate::error::{DbContext, MigrateError};
use mysql_async::{
    ClientIdentity, Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts,
};
use shardgate_cdc::{BinlogPosition, WRITE_TIME_ZONE};
use shardgate_rules::config::{BackendTls, BackendUrl, Config, SslMode};
use std::collections::BTreeMap;
use std::time::Duration;

/// A data source whose server or database differs between the two
/// configurations: the migrator would read one and write another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedDataSource {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// The data sources named in either configuration whose URL differs.
pub fn moved_data_sources(from: &Config, to: &Config) -> Vec<MovedDataSource> {
    from.data_sources
        .iter()
        .filter_map(|(name, old)| {
            let new = to.data_sources.get(name)?;
            (old.url != new.url).then(|| MovedDataSource {
                name: name.clone(),
                from: old.url.to_string(),
                to: new.url.to_string(),
            })
        })
        .collect()
}

/// A replica of a data source, for lag checks.
pub struct Replica {
    /// `host:port`, for messages.
    pub address: String,
    pub pool: Pool,
}

/// Pools for every data source of both configurations.
pub struct Backends {
    primaries: BTreeMap<String, (BackendUrl, Pool)>,
    replicas: BTreeMap<String, Vec<Replica>>,
}

fn opts(url: &BackendUrl) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(url.host.clone())
        .tcp_port(url.port)
        .user(Some(url.user.clone()))
        .pass(Some(url.password.clone()))
        .db_name(Some(url.database.clone()))
        .ssl_opts(ssl_opts(&url.tls))
}

/// A URL's `ssl-mode` in mysql_async's terms. mysql_async cannot go on in
/// the clear once it asked for TLS, so PREFERRED is REQUIRED here: a server
/// that offers no TLS fails the migrator's connections (where the proxy's
/// fall back). The verifying modes trust the URL's CA alone.
fn ssl_opts(tls: &BackendTls) -> Option<SslOpts> {
    // A path, which mysql_async reads when it builds its TLS connector.
    let path = |p: &std::path::PathBuf| p.clone().into();
    let opts = match tls.mode {
        SslMode::Disabled => return None,
        SslMode::Preferred | SslMode::Required => {
            return Some(SslOpts::default().with_danger_accept_invalid_certs(true))
        }
        SslMode::VerifyCa => SslOpts::default().with_danger_skip_domain_validation(true),
        SslMode::VerifyIdentity => SslOpts::default(),
    };
    let identity = tls
        .client_cert
        .as_ref()
        .map(|c| ClientIdentity::new(path(&c.cert), path(&c.key)));
    Some(
        opts.with_root_certs(tls.ca.iter().map(path).collect())
            .with_disable_built_in_roots(true)
            .with_client_identity(identity),
    )
}

/// How long an idle pooled connection is kept. mysql_async's default (0)
/// closes every connection as it is returned, so that each batch of the
/// copy paid for a new connection (about 100 a second at full speed).
const IDLE_CONNECTION_TTL: Duration = Duration::from_secs(60);

fn pool(url: &BackendUrl, max_connections: usize) -> Pool {
    let constraints = PoolConstraints::new(0, max_connections.max(1)).unwrap_or_default();
    // `setup`, not `init`: the pool resets a returned connection
    // (COM_RESET_CONNECTION), which puts the session's time zone back.
    let opts = opts(url)
        .setup(vec![format!("SET time_zone = '{WRITE_TIME_ZONE}'")])
        .pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(IDLE_CONNECTION_TTL),
        );
    Pool::new(opts)
}

impl Backends {
    /// Pools for the data sources of `from` and `to` (the new
    /// configuration's URL wins for a name in both; the plan refuses a
    /// data source whose URL changed). `max_connections` bounds each pool.
    pub fn new(from: &Config, to: &Config, max_connections: usize) -> Backends {
        let mut primaries = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for config in [from, to] {
            for (name, source) in &config.data_sources {
                primaries.insert(
                    name.clone(),
                    (source.url.clone(), pool(&source.url, max_connections)),
                );
                let list = source
                    .replicas
                    .iter()
                    .map(|url| Replica {
                        address: format!("{}:{}", url.host, url.port),
                        pool: pool(url, 1),
                    })
                    .collect();
                replicas.insert(name.clone(), list);
            }
        }
        Backends {
            primaries,
            replicas,
        }
    }

    /// A connection to a data source's primary.
    pub async fn conn(&self, data_source: &str) -> Result<Conn, MigrateError> {
        let (url, pool) = self
            .primaries
            .get(data_source)
            .ok_or_else(|| MigrateError::UnknownDataSource(data_source.to_string()))?;
        pool.get_conn()
            .await
            .context(|| format!("connecting to {data_source} ({url})"))
    }

    /// How to open a connection of its own to a data source's primary (a
    /// change stream's).
    pub fn opts(&self, data_source: &str) -> Result<Opts, MigrateError> {
        self.primaries
            .get(data_source)
            .map(|(url, _)| Opts::from(opts(url)))
            .ok_or_else(|| MigrateError::UnknownDataSource(data_source.to_string()))
    }

    /// A primary's current binlog position (where its next transaction
    /// will be written) and `@@gtid_binlog_pos`, for display.
    pub async fn position(
        &self,
        data_source: &str,
    ) -> Result<(BinlogPosition, String), MigrateError> {
        let mut conn = self.conn(data_source).await?;
        shardgate_cdc::current_position(&mut conn)
            .await
            .map_err(|source| MigrateError::Cdc {
                data_source: data_source.to_string(),
                source: Box::new(source),
            })
    }

    /// The database a data source's tables live in.
    pub fn database(&self, data_source: &str) -> Result<&str, MigrateError> {
        self.primaries
            .get(data_source)
            .map(|(url, _)| url.database.as_str())
            .ok_or_else(|| MigrateError::UnknownDataSource(data_source.to_string()))
    }

    pub fn replicas(&self, data_source: &str) -> &[Replica] {
        self.replicas
            .get(data_source)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Closes every pool (waits for their connections to close).
    pub async fn disconnect(self) {
        let replicas = self.replicas.into_values().flatten().map(|r| r.pool);
        for pool in self.primaries.into_values().map(|(_, p)| p).chain(replicas) {
            if let Err(error) = pool.disconnect().await {
                tracing::debug!(%error, "closing a pool");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::users_config;

    #[test]
    fn a_data_source_pointing_elsewhere_is_named() {
        let old = users_config(4, 16);
        let mut new = users_config(8, 16);
        assert!(moved_data_sources(&old, &new).is_empty());
        new.data_sources.get_mut("ds1").unwrap().url =
            BackendUrl::parse("mysql://root@127.0.0.1:13307/other").unwrap();
        let moved = moved_data_sources(&old, &new);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].name, "ds1");
        assert!(moved[0].to.ends_with("/other"), "{:?}", moved[0]);
    }

    fn ssl(query: &str) -> Option<SslOpts> {
        let url = BackendUrl::parse(&format!("mysql://root@127.0.0.1:13306/ds0?{query}")).unwrap();
        Opts::from(opts(&url)).ssl_opts().cloned()
    }

    #[test]
    fn the_urls_ssl_mode_decides_what_is_checked() {
        assert!(ssl("").is_none());
        for mode in ["PREFERRED", "REQUIRED"] {
            let unchecked = ssl(&format!("ssl-mode={mode}")).expect("TLS");
            assert!(unchecked.accept_invalid_certs(), "{mode}");
        }
        let chain = ssl("ssl-mode=VERIFY_CA&ssl-ca=/ca.pem").expect("TLS");
        assert!(!chain.accept_invalid_certs() && chain.skip_domain_validation());
        assert!(chain.disable_built_in_roots());
        assert_eq!(chain.root_certs().len(), 1);
        let identity =
            ssl("ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem&ssl-cert=c&ssl-key=k").expect("TLS");
        assert!(!identity.accept_invalid_certs() && !identity.skip_domain_validation());
        assert!(identity.client_identity().is_some());
    }
}
