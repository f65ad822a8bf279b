//! The TLS the proxy speaks to a data source, as its URL's `ssl-mode`
//! asks: no MySQL in here, only the rustls client side (which certificate
//! check, which CA, which client certificate) and the handshake on a
//! connected socket; the protocol crate decides when to start it.
//!
//! The files are read for each new connection (`for_url`), so a renewed
//! CA or client certificate takes effect on the next connection without a
//! reload; a connection costs a TLS handshake anyway, next to which
//! reading two small PEM files is little.

mod verify;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use shardgate_rules::config::{BackendUrl, ClientCert, SslMode};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::net::{split_tls, ReadHalf, WriteHalf};
use crate::tls::install_crypto_provider;

/// Why TLS to a data source could not be set up. Paths are the URL's
/// options; the URL itself (it may hold a password) is never quoted.
#[derive(Debug, thiserror::Error)]
pub enum DataSourceTlsError {
    #[error("ssl-ca {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("ssl-ca {}: {source}", path.display())]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("ssl-ca {} holds no certificate", .0.display())]
    NoCa(PathBuf),
    #[error("ssl-cert {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("ssl-cert {} holds no certificate", .0.display())]
    NoCert(PathBuf),
    #[error("ssl-key {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("ssl-cert and ssl-key do not make a TLS client: {0}")]
    BadClientCert(rustls::Error),
    #[error("the CA does not make a certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("ssl-mode=VERIFY_IDENTITY needs a host name or IP address to check, not '{0}'")]
    BadHost(String),
    #[error("the server does not offer TLS (no CLIENT_SSL in its greeting) and ssl-mode={0} requires it")]
    NotOffered(SslMode),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

/// TLS to one data source, ready for a connection's handshake.
pub struct DataSourceTls {
    mode: SslMode,
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// The name a certificate is checked against when the host is not one
/// (only VERIFY_IDENTITY checks names, and it refuses such a host).
const NO_NAME: &str = "data-source.invalid";

impl DataSourceTls {
    /// The TLS `url` asks for; None when its ssl-mode is DISABLED.
    pub fn for_url(url: &BackendUrl) -> Result<Option<DataSourceTls>, DataSourceTlsError> {
        let tls = &url.tls;
        if tls.mode == SslMode::Disabled {
            return Ok(None);
        }
        install_crypto_provider();
        let name = match ServerName::try_from(url.host.as_str()) {
            Ok(name) => name.to_owned(),
            Err(_) if tls.mode != SslMode::VerifyIdentity => ServerName::try_from(NO_NAME)
                .map_err(|_| DataSourceTlsError::BadHost(NO_NAME.into()))?,
            Err(_) => return Err(DataSourceTlsError::BadHost(url.host.clone())),
        };
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &tls.ca {
            Some(ca) if tls.mode.verifies() => {
                let chain = WebPkiServerVerifier::builder(Arc::new(roots(ca)?)).build()?;
                if tls.mode == SslMode::VerifyIdentity {
                    chain
                } else {
                    Arc::new(verify::ChainOnly(chain))
                }
            }
            // The rules refuse a verifying mode without ssl-ca.
            _ => Arc::new(verify::Unverified(signature_algorithms())),
        };
        let builder = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &tls.client_cert {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let (chain, key) = client_cert(client)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(DataSourceTlsError::BadClientCert)?
            }
        };
        Ok(Some(DataSourceTls {
            mode: tls.mode,
            connector: TlsConnector::from(Arc::new(config)),
            name,
        }))
    }

    /// Whether to start TLS on a server whose greeting did (`offered`) or
    /// did not offer it: PREFERRED goes on in the clear, every other mode
    /// refuses such a server.
    pub fn wanted(&self, offered: bool) -> Result<bool, DataSourceTlsError> {
        match (offered, self.mode) {
            (true, _) => Ok(true),
            (false, SslMode::Preferred) => Ok(false),
            (false, mode) => Err(DataSourceTlsError::NotOffered(mode)),
        }
    }

    /// The TLS handshake on a connection whose server was asked to start
    /// it, as the halves the protocol reads and writes.
    pub async fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<(ReadHalf, WriteHalf), DataSourceTlsError> {
        let stream = self
            .connector
            .connect(self.name.clone(), stream)
            .await
            .map_err(DataSourceTlsError::Handshake)?;
        Ok(split_tls(stream))
    }
}

/// The certificates of a PEM file, or why not.
fn pem_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

fn roots(path: &Path) -> Result<RootCertStore, DataSourceTlsError> {
    let certs = pem_certificates(path).map_err(|source| DataSourceTlsError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    if certs.is_empty() {
        return Err(DataSourceTlsError::NoCa(path.to_path_buf()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|source| DataSourceTlsError::BadCa {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(roots)
}

fn client_cert(
    files: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), DataSourceTlsError> {
    let chain = pem_certificates(&files.cert).map_err(|source| DataSourceTlsError::ReadCert {
        path: files.cert.clone(),
        source,
    })?;
    if chain.is_empty() {
        return Err(DataSourceTlsError::NoCert(files.cert.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| DataSourceTlsError::ReadKey {
            path: files.key.clone(),
            source,
        })?;
    Ok((chain, key))
}

/// The signature algorithms of the installed provider (ring).
fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::CryptoProvider::get_default()
        .map(|provider| provider.signature_verification_algorithms)
        .unwrap_or_else(|| {
            rustls::crypto::ring::default_provider().signature_verification_algorithms
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A CA, and a server certificate it issued for `localhost` only.
    struct Pki {
        dir: PathBuf,
        server: rustls::ServerConfig,
    }

    fn pki(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("sg-dstls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        install_crypto_provider();
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        Pki { dir, server }
    }

    fn url(host: &str, query: &str) -> BackendUrl {
        BackendUrl::parse(&format!("mysql://u@{host}:1/db?{query}")).unwrap()
    }

    /// Handshakes with a TLS server that echoes one byte, as `url` asks.
    async fn handshake(server: &Pki, url: &BackendUrl) -> Result<(), DataSourceTlsError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server.server.clone()));
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(socket).await {
                let mut byte = [0];
                if tls.read_exact(&mut byte).await.is_ok() {
                    let _ = tls.write_all(&byte).await;
                    let _ = tls.flush().await;
                }
            }
        });
        let tls = DataSourceTls::for_url(url)?.expect("a TLS mode");
        let (mut r, mut w) = tls
            .handshake(TcpStream::connect(addr).await.unwrap())
            .await?;
        assert!(r.is_tls());
        w.write_all(b"x").await.unwrap();
        w.flush().await.unwrap();
        let mut echo = [0];
        r.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"x");
        Ok(())
    }

    fn ca_query(mode: &str, pki: &Pki) -> String {
        format!(
            "ssl-mode={mode}&ssl-ca={}",
            pki.dir.join("ca.pem").display()
        )
    }

    #[tokio::test]
    async fn each_mode_checks_what_mysql_says_it_checks() {
        let server = pki("server");
        let stranger = pki("stranger");
        // The certificate names localhost: VERIFY_IDENTITY accepts it
        // there only, VERIFY_CA at any address.
        handshake(
            &server,
            &url("localhost", &ca_query("VERIFY_IDENTITY", &server)),
        )
        .await
        .expect("the right CA and name");
        let err = handshake(
            &server,
            &url("127.0.0.1", &ca_query("VERIFY_IDENTITY", &server)),
        )
        .await
        .expect_err("the name is not the address");
        assert!(err.to_string().contains("certificate"), "{err}");
        handshake(&server, &url("127.0.0.1", &ca_query("VERIFY_CA", &server)))
            .await
            .expect("VERIFY_CA forgives the name");
        // Another CA's: refused when verifying, taken when only encrypting.
        let err = handshake(
            &server,
            &url("localhost", &ca_query("VERIFY_CA", &stranger)),
        )
        .await
        .expect_err("another CA");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        handshake(&server, &url("127.0.0.1", "ssl-mode=REQUIRED"))
            .await
            .expect("REQUIRED does not verify");
    }

    #[test]
    fn disabled_needs_nothing_and_preferred_falls_back() {
        assert!(DataSourceTls::for_url(&url("h", "")).unwrap().is_none());
        let preferred = DataSourceTls::for_url(&url("h", "ssl-mode=PREFERRED"))
            .unwrap()
            .unwrap();
        assert!(!preferred.wanted(false).unwrap());
        assert!(preferred.wanted(true).unwrap());
        let required = DataSourceTls::for_url(&url("h", "ssl-mode=REQUIRED"))
            .unwrap()
            .unwrap();
        let err = required.wanted(false).unwrap_err();
        assert!(err.to_string().contains("ssl-mode=REQUIRED"), "{err}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let missing = url("h", "ssl-mode=VERIFY_CA&ssl-ca=/nonexistent/ca.pem");
        let err = DataSourceTls::for_url(&missing).err().expect("refused");
        assert!(
            err.to_string().starts_with("ssl-ca /nonexistent/ca.pem"),
            "{err}"
        );
        let server = pki("files");
        let empty = server.dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let query = format!("ssl-mode=VERIFY_CA&ssl-ca={}", empty.display());
        let err = DataSourceTls::for_url(&url("h", &query))
            .err()
            .expect("refused");
        assert!(matches!(err, DataSourceTlsError::NoCa(_)), "{err}");
        let query = format!(
            "ssl-mode=REQUIRED&ssl-cert={}&ssl-key=/nonexistent/key.pem",
            server.dir.join("ca.pem").display()
        );
        let err = DataSourceTls::for_url(&url("h", &query))
            .err()
            .expect("refused");
        assert!(
            err.to_string().starts_with("ssl-key /nonexistent/key.pem"),
            "{err}"
        );
    }
}
