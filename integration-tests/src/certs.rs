//! Certificates for the TLS tests: a CA of their own and a server
//! certificate it signs for 127.0.0.1 and localhost, so that clients can
//! verify both the chain and the name (a driver's "verify-full").

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM files: the CA clients trust, the server's certificate and its key.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a new CA named `name` and a server certificate it signs; writes
/// them into `dir` as `<name>-ca.pem`, `<name>-cert.pem`, `<name>-key.pem`.
pub fn issue(dir: &Path, name: &str) -> TestCerts {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("ShardGate test CA {name}"));
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut params = CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");

    std::fs::create_dir_all(dir).expect("the certificates' folder");
    let write = |suffix: &str, text: String| {
        let path = dir.join(format!("{name}-{suffix}.pem"));
        std::fs::write(&path, text).expect("write a certificate file");
        path
    };
    TestCerts {
        ca: write("ca", ca.pem()),
        cert: write("cert", cert.pem()),
        key: write("key", key.serialize_pem()),
    }
}

impl TestCerts {
    /// `[server.tls]` naming these files.
    pub fn server_toml(&self) -> String {
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}
