//! The sandbox's TLS, for the tests of TLS to data sources: the CA that
//! issued its servers' certificate and the certificate itself (each server
//! names them: `@@ssl_ca`, `@@ssl_cert`, so the tests find them whichever
//! folder the sandbox runs from), and configurations whose data-source URLs
//! use them.

use std::path::PathBuf;

use shardgate_rules::config::{BackendTls, SslMode};

use crate::{direct_endpoint, Config};

/// Where the sandbox keeps its TLS files.
pub struct SandboxTls {
    /// The CA every server's certificate chains to.
    pub ca: PathBuf,
    /// The servers' certificate (for 127.0.0.1 and localhost): a CA that
    /// did not issue it, when a test needs a wrong one.
    pub server_cert: PathBuf,
}

/// The TLS files of the sandbox that `cfg`'s default data source runs in.
/// Panics when its servers offer no TLS: they were started before
/// `docker/sandbox.sh` configured it.
pub async fn sandbox_tls(cfg: &Config) -> SandboxTls {
    let mut conn = direct_endpoint(cfg)
        .connect()
        .await
        .expect("connect to the default data source");
    let (have, ca, cert): (String, String, String) =
        sqlx::query_as("SELECT @@have_ssl, COALESCE(@@ssl_ca, ''), COALESCE(@@ssl_cert, '')")
            .fetch_one(&mut conn)
            .await
            .expect("the server's TLS settings");
    assert!(
        have == "YES" && !ca.is_empty() && !cert.is_empty(),
        "the sandbox's servers offer no TLS (have_ssl = {have}): they were started before \
         docker/sandbox.sh configured it; restart them: docker/sandbox.sh down && docker/sandbox.sh up"
    );
    SandboxTls {
        ca: ca.into(),
        server_cert: cert.into(),
    }
}

/// `cfg` with every data source's URL, primaries' and replicas', asking
/// for TLS in `mode`, verified against `ca`.
pub fn with_tls(mut cfg: Config, mode: SslMode, ca: Option<PathBuf>) -> Config {
    let tls = BackendTls {
        mode,
        ca,
        client_cert: None,
    };
    for ds in cfg.data_sources.values_mut() {
        for url in std::iter::once(&mut ds.url).chain(ds.replicas.iter_mut()) {
            url.tls = tls.clone();
        }
    }
    cfg
}
