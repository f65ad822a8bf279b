//! The TLS the proxy offers clients: the certificate chain and key that
//! `server.tls` names, read whenever a configuration version is built (at
//! start, on SIGHUP, on POST /api/reload), so renewed files take effect
//! without a restart and a broken pair keeps the previous version serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shardgate_rules::config::TlsFiles;
use tokio_rustls::TlsAcceptor;

/// Why `server.tls` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert {}: {source}", path.display())]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("server.tls.key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("server.tls.cert {} holds no certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("server.tls: the certificate and key do not make a TLS server: {0}")]
    Rejected(#[from] rustls::Error),
}

/// A TLS acceptor for clients, from the PEM files named in the config.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    install_crypto_provider();
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        path: files.key.clone(),
        source,
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_err = |source| TlsError::Cert {
        path: path.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
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
        assert!(acceptor(&files).is_ok());
    }

    fn error(cert: &Path, key: &Path) -> TlsError {
        let files = TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        acceptor(&files).err().expect("refused")
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
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");

        let err = error(&cert, &cert);
        assert!(err.to_string().starts_with("server.tls.key "), "{err}");

        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other_key = write(&dir, "other.pem", &other.signing_key.serialize_pem());
        let err = error(&cert, &other_key);
        assert!(matches!(err, TlsError::Rejected(_)), "{err}");
    }
}
