//! The TLS the proxy offers clients: the certificate chain and key that
//! `server.tls` names (MySQL clients) or `server.admin_tls` (the admin
//! HTTP listener), read whenever a configuration version is built (at
//! start, on SIGHUP, on POST /api/reload), so renewed files take effect
//! without a restart and a broken pair keeps the previous version serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shardgate_rules::config::TlsFiles;
use tokio_rustls::TlsAcceptor;

/// Why a setting's certificate and key (`setting`: `server.tls`,
/// `server.admin_tls`) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}.cert {}: {source}", path.display())]
    Cert {
        setting: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{setting}.key {}: {source}", path.display())]
    Key {
        setting: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{setting}.cert {} holds no certificate", path.display())]
    NoCertificate {
        setting: &'static str,
        path: PathBuf,
    },
    #[error("{setting}: the certificate and key do not make a TLS server: {source}")]
    Rejected {
        setting: &'static str,
        source: rustls::Error,
    },
}

/// A TLS acceptor from the PEM files the config's `setting` names.
pub fn acceptor(setting: &'static str, files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    install_crypto_provider();
    let chain = certificates(setting, &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        setting,
        path: files.key.clone(),
        source,
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected { setting, source })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_err = |source| TlsError::Cert {
        setting,
        path: path.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            setting,
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// ring as rustls' crypto, for every TLS the process makes; installed once
/// per process, so a second call (or another component's) changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sg-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_generated_pair_makes_an_acceptor() {
        let dir = scratch("pair");
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let files = TlsFiles {
            cert: write(&dir, "cert.pem", &issued.cert.pem()),
            key: write(&dir, "key.pem", &issued.signing_key.serialize_pem()),
        };
        assert!(acceptor("server.tls", &files).is_ok());
    }

    fn error(cert: &Path, key: &Path) -> TlsError {
        let files = TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        acceptor("server.tls", &files).err().expect("refused")
    }

    #[test]
    fn errors_name_the_file_that_is_wrong() {
        let dir = scratch("errors");
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(&dir, "cert.pem", &issued.cert.pem());
        let key = write(&dir, "key.pem", &issued.signing_key.serialize_pem());
        let missing = dir.join("missing.pem");
        let empty = write(&dir, "empty.pem", "");

        let err = error(&missing, &key);
        assert!(err.to_string().starts_with("server.tls.cert "), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let err = error(&empty, &key);
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

        let err = error(&cert, &cert);
        assert!(err.to_string().starts_with("server.tls.key "), "{err}");

        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other_key = write(&dir, "other.pem", &other.signing_key.serialize_pem());
        let err = error(&cert, &other_key);
        assert!(matches!(err, TlsError::Rejected { .. }), "{err}");
    }
}
